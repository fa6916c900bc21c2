"""One module per CLI command: ``fairbig X`` does what ``fairbig.commands.X`` says.

Pure parts live beside the package, named for what they hold (``jobtable``,
``states``, ``storeview``, ``treemerge``, ...); ``fairbig.cli`` only parses options."""
