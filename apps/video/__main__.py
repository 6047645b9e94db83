from apps.common.errors import exit_on_user_error
from apps.video import main

exit_on_user_error(main)
