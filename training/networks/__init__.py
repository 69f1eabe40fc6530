"""Training and running the stage networks (sdk.nets.vgg16.VGG16) in PyTorch."""
