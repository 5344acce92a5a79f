"""chatbots: the conversation core. Platform-free: nothing here imports slack_bolt, slack_sdk or discord."""
