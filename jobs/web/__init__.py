"""The faces: HTML pages (views.py, forms.py, urls.py), the REST API and the NeMo Customizer
routes (api/), and the operators' admin (admin.py)."""
