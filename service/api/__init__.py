"""HTTP routers: thin layers that parse requests and shape responses; the work is in InferenceService."""
