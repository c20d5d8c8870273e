"""Models: one file per family. Each takes its parts as arguments:

    Model(input_shape, num_outputs, activation, **options)

`input_shape` and `num_outputs` come from the data module, `activation` is a zero-argument
factory of fresh activation modules (nnlab.activations). A class attribute `needs_image` says
whether the model needs (C, H, W) inputs. Add a family: a file here and a yaml in conf/model/
whose `_target_` names the class.
"""
