"""The bases methods derive from: the method contract (`base`), supervised methods trained by the
shared learner (`supervised`, `learner`, `batch`), replay methods (`replay`), and the
bases of a few families (exemplar memories, weight regularization, episodic memories,
contrastive replay, off-policy RL)."""
