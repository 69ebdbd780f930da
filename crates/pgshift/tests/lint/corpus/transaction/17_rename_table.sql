-- expect: renaming-table
ALTER TABLE caterers RENAME TO vendors;
