"""Converter for the official MaskGCT release (Hub ``amphion/MaskGCT`` layout)."""

from .convert_maskgct import MASKGCT_FILES, is_maskgct_folder, write_converted_maskgct

__all__ = ["MASKGCT_FILES", "is_maskgct_folder", "write_converted_maskgct"]
