"""Shipping a student: verified .tflite and .onnx files, its model file and weights, a model card."""
