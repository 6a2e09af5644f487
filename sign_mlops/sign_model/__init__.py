"""The ML library (the design card's sign_model/): data, validation, training, evaluation, robustness,
export, registry and tracking. TensorFlow and MLflow; may use serving; never Prefect."""
