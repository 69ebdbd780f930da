-- expect: ban-char-field prefer-text-field
CREATE TABLE countries (
  code char(2) PRIMARY KEY,
  name varchar(80) NOT NULL
);
