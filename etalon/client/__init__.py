"""Streaming clients, the client registry, the open-loop dispatcher and the Ray actor pool."""

from etalon.client.base import ClientConfig, Clock, LLMClient, make_client
from etalon.client.openai import OpenAIChatClient, OpenAICompletionsClient
from etalon.registry import raw

raw("client").register("openai-chat", OpenAIChatClient)
raw("client").register("openai-completions", OpenAICompletionsClient)

__all__ = ["ClientConfig", "Clock", "LLMClient", "make_client",
           "OpenAIChatClient", "OpenAICompletionsClient"]
