"""The learned router: NLL targets over the blend grid, context features, softmax-regression fit."""
