"""paretune dashboard."""
