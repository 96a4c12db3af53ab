"""discord.py Cogs of the Discord adapter, one per concern (photos, models, info).

Each Cog receives its resources (the shared ``PhotoService`` and the settings) through its
constructor and only translates between discord.py objects and ``bot.core``.
"""
