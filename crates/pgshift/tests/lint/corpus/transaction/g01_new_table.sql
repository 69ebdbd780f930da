-- expect: clean
CREATE TABLE shipments (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  order_id bigint NOT NULL,
  carrier text NOT NULL,
  shipped_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shipments_order_id ON shipments (order_id);
ALTER TABLE shipments ADD CONSTRAINT shipments_carrier_known CHECK (carrier <> '');
