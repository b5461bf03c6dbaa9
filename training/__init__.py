"""LoRA training kit for the ETHMumbai style: dataset preparation, training, validation renders.

Commands (see training/README.md):
  python -m training.prepare_dataset RAW_DIR DATASET_DIR --trigger ethmumbai_style
  python -m training.train --base-model sd_xl_base_1.0.safetensors --dataset DATASET_DIR --output RUN_DIR
  python -m training.validate RUN_DIR --photos PHOTOS_DIR
"""
