from apps.captioning import main
from apps.common.errors import exit_on_user_error

exit_on_user_error(main)
