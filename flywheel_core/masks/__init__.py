"""The mask factory: prompts from labels, segmentation back ends, refinement and QA."""
