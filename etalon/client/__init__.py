"""Streaming clients, the client registry, the open-loop dispatcher and the Ray actor pool."""

from etalon.client.base import CLIENTS, ClientConfig, Clock, LLMClient, make_client, register_client
from etalon.client.openai import OpenAIChatClient, OpenAICompletionsClient

register_client("openai-chat", OpenAIChatClient)
register_client("openai-completions", OpenAICompletionsClient)

__all__ = ["CLIENTS", "ClientConfig", "Clock", "LLMClient", "make_client", "register_client",
           "OpenAIChatClient", "OpenAICompletionsClient"]
