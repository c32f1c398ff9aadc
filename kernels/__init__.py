"""paretune kernels."""
