"""OpenAI's API at /v1, translated onto the LLM gateway: HTTP translation only."""
