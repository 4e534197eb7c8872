"""Fakes of the chat platforms that speak their real wire protocols on loopback."""
