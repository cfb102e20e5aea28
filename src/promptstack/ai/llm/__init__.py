"""The LLM gateway: providers behind one service, with tokens, usage, credits and limits."""
