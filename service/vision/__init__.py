"""Pure image code (numpy + Pillow): decode, preprocess, postprocess.

No web, backend or torch imports: the gateway, batch scoring and the export parity checks share it.
"""
