"""The server's routes, a router per API family: openai.py (the OpenAI-style API),
responses.py (OpenAI's Responses API), anthropic.py (the Anthropic Messages API),
native.py and native_completion.py (llama-server's own endpoints), web.py (the chat page)."""
