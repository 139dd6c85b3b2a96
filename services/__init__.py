"""The servers the platform runs on this machine (tidewater services): pid files, health, order."""
