"""paretune search."""
