"""Post-training stages (`post.stages`)."""
