"""Reading and writing: ImageScope XML, QuPath GeoJSON, tables, COCO, the HTML report."""
