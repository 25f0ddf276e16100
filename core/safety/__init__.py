"""The emergency screen and the refusals: decision types, rules, vital signs, the classifier, patient identifiers."""
