"""Publishing: local Hugging Face dataset folders with a data card, and the push to the Hub."""

from pipeline.publish.dataset import PublishConfig, publish_dataset
from pipeline.publish.hub import HubPushError, push_folder

__all__ = ["HubPushError", "PublishConfig", "publish_dataset", "push_folder"]
