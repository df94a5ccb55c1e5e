"""The operator's tools: the command line, the embedded demo, the synthetic salon and bulk loading."""
