"""Task packages of the predictor; ``geometry`` holds the 3D code they share."""
