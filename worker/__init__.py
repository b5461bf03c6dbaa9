"""RunPod serverless worker for the ETHMumbai avatar workflow."""
