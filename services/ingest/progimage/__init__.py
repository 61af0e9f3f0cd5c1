"""Progimage: ``POST /user/images`` (upload and process, one image or a bulk), the user's
list, on-demand derived images, and ``/uploads/image/file/`` serving."""
