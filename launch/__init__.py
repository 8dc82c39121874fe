"""fabperf launch: benchmark environments started from the baked images."""
