"""Fine-tuning Hugging Face causal LMs: the Trainer run (sft.py) and what it reports through,
lazily tokenized rows (data.py), the device (device.py), several processes (launch.py,
child.py), and the checks of the result (outputs.py). Django-free, so that torchrun's
processes can import it."""
