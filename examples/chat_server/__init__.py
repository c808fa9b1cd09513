"""Example chat server that uses Reverie: ``uvicorn examples.chat_server.app:app``."""
