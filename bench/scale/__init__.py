"""`make bench-scale`: the real operator on 1,000 kwok nodes with 2,000 TrainingJobs arriving in bursts."""
