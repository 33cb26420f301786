"""Images as [-1, 1] tensors: datasets, their files, and batches.

Read in this order: ``sources`` (``load_dataset``: Fashion-MNIST, CIFAR-10, image folders and array files;
downloads; the offline error; ``python -m ddpm_lib.data.sources status``), ``image_datasets`` (the Dataset
classes behind it), ``standins`` (the synthetic stand-ins fast and cpu mode use when real data is
missing), ``batching`` (epoch-seeded batches, shared with DistributedDataParallel).
"""
