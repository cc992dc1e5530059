"""Labels as users bring them: reading any label file into the lake's label schema."""
