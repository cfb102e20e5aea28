"""The AI domains: the LLM gateway, documents, and the OpenAI-compatible API."""
