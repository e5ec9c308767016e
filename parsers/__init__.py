"""Bytes -> typed mail: decoding, HTML to text, subjects and tags, machine mail.  No I/O."""
from maildesk.parsers.html import html_to_text
from maildesk.parsers.language import detect_language
from maildesk.parsers.mime import parse_mail

__all__ = ["parse_mail", "html_to_text", "detect_language"]
