"""Development tools shared by tests and benchmarks: test photos, a ComfyUI started for a script, the worker's
local API started as deployed. Imports the product (pack, driver, worker); nothing in the product imports this."""
