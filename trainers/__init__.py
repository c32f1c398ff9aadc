"""paretune trainers."""
