"""Every wire format onedoor speaks, as pure sans-IO codecs: bytes in, typed events out."""
