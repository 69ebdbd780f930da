-- expect: require-concurrent-refresh
REFRESH MATERIALIZED VIEW daily_revenue;
