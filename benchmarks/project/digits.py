"""Train an RBF SVC on scikit-learn's bundled digits dataset; print its validation accuracy."""

import argparse
import json

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

parser = argparse.ArgumentParser()
parser.add_argument("--C", type=float, default=1.0)
parser.add_argument("--gamma", type=float, default=0.001)
args = parser.parse_args()
X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.3, random_state=0)
model = SVC(C=args.C, gamma=args.gamma).fit(X_train, y_train)
print(json.dumps({"accuracy": float(model.score(X_val, y_val))}))
