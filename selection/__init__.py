"""Selection: load a dialogue corpus, score every listener reply with a judge, select the expert subsets."""
