"""Text generation (causal LM): data with completion-only loss and packing, the LM seen through the backbone
contract, fit, generation and its metrics (perplexity, exact match, ROUGE-L), and the run predictor."""
