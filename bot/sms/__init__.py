"""SMS (issue 21): one port, two provider SDKs (Alibaba Cloud Dysms, Tencent Cloud SMS), the "sms"
delivery channel, phone confirmation codes and the 微信客服 fallback. See docs/sms.md.

SDKs are imported only when SMS_PROVIDER names them; their blocking calls run in a thread.
"""
