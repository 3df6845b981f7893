"""Rule-based rewards (`post.rewards`)."""
