"""The four transformations of Models Genesis (paper Sec. 2.1) and their composition."""
