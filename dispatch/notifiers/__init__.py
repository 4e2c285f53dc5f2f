"""Alert channels beyond the websocket: signed webhook, WeCom and DingTalk robots, SMS."""
