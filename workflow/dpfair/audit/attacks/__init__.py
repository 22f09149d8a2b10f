"""The attacks, one module each; :mod:`dpfair.audit.registry` imports every module here on its first lookup.

Nothing is imported here: a new attack is a new file with ``@register_attack`` and needs no line in this
package (docs/adding-an-attack.md). :mod:`~dpfair.audit.attacks.common` holds the rows the membership
attacks share and registers nothing.
"""
