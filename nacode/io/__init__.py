"""Reading and writing what scanners and pipelines produce (images; more to come)."""
